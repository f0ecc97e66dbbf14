// The settings page: typing a confidence chooses "at or above" (the number is its part of the choice).
document.querySelectorAll("input[name=threshold]").forEach((number) => {
  const choose = () => {
    const at = number.form.querySelector("input[name=auto_approve][value=at]");
    if (at) at.checked = true;
  };
  number.addEventListener("focus", choose);
  number.addEventListener("input", choose);
});
